"""DeepZoo's HTTP service: configuration, database layer, API and inference."""
