"""Starting weights for encoders from files of other frameworks (e.g. a TensorFlow Lite
ImageNet MobileNetV2), as state dicts in our encoders' layer names."""
