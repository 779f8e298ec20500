"""Re-ID networks. Methods register here by name; nothing in this package imports Ray or MLflow."""
