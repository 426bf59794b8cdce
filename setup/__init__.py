"""One-shot, idempotent setup of Elasticsearch and Kibana for the inference log pipeline."""
