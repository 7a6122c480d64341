"""Base models: import and lineage, chat templates, tool-call formats (no Airflow; heavy imports lazy)."""
