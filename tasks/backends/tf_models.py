"""Built-in TensorFlow/Keras model builders (registered without importing TensorFlow)."""
