"""ML Metadata: reading runs and their numbers back, and a run's books."""
