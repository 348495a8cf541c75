"""Training: the model registry, typed config, the Keras trainer and its evaluation reports."""
