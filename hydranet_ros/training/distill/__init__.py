"""Distillation: a teacher segmentation network (``.tflite`` or ``.onnx``) labels the frames
of the user's unlabelled recordings once (cached, resumable); those frames become a
labels-only training set that mixes with depth-supervised data."""
from .cache import FrameSelection, UnlabelledDataError, label_recording
from .class_map import LABEL_SETS, ClassMapError, class_lut
from .dataset import TeacherLabelledDataset, build_teacher_dataset
from .teacher import Teacher, TeacherError, load_teacher

__all__ = ["LABEL_SETS", "ClassMapError", "FrameSelection", "Teacher", "TeacherError", "TeacherLabelledDataset",
           "UnlabelledDataError", "build_teacher_dataset", "class_lut", "label_recording", "load_teacher"]
