"""Wildlife re-identification: data contract, models, evaluation, and Ray/MLflow pipelines."""

__version__ = "0.1.0"
