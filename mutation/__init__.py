"""Mutation testing of the `mlobs` library with mutmut 3: `make mutate` (python -m mutation).

mutmut writes mutated copies of mlobs/ into mutants/, traces the suite once to learn which tests
call which function, then runs each mutant against those tests only; results are cached in
mutants/ between runs. This package runs it within a time budget and reports the score."""
