"""Ray orchestration: training (Train), tuning (Tune + Optuna), and publishing results to MLflow."""
