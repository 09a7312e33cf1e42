"""Planning, extraction, Ray Tune, MLflow and aggregation for the probing benchmark."""
