"""Idempotent setup of Elasticsearch and Kibana for the inference log pipeline, in two steps."""
