"""The default recipe, which is also the recipe's schema (see ``config``): every key a
recipe may set, its type (that of the default) and its allowed values or range."""
from __future__ import annotations

from typing import Any

Config = dict[str, Any]

DEFAULTS: Config = {
    "name": "hydranet",          # names the run dir and the weights file
    "task": "depth_segmentation",  # depth_segmentation | face_attributes (age, gender, race)
    "seed": 0,
    "device": "auto",            # auto | cpu | cuda[:N]
    "threads": 0,                # CPU threads for torch; 0 = torch's default (one per core)
    "run_dir": None,             # checkpoints and TensorBoard logs; default runs/<name>
    "output": None,              # final weights; default weights/hydranet_<name>.safetensors
    "data": {
        "kind": "synthetic",     # folder | cityscapes | kitti | nyud | synthetic; utkface (faces)
        "root": None,            # dataset directory (not needed for synthetic)
        "train_split": "train",
        # more training sets concatenated to the first: [{kind, root, split, options, transform}, ...];
        # kind "teacher": a recording a teacher network labels (options: teacher, classes, class_map ...)
        "extra_train_sets": [],
        "val_split": "val",
        "options": {},           # extra keyword arguments for build_dataset (train and val)
        "train_options": {},     # ... for the training set only
        "val_options": {},       # ... for the validation set only
        "transform": {},         # keyword arguments for train_transforms
        "val_transform": {},     # keyword arguments for eval_transforms
        "batch_size": 8,         # per process (per GPU): the global batch is batch_size x processes
        "global_batch_size": None,  # instead: the global batch, divided among the processes (must divide)
        "val_batch_size": 4,      # per process
        "num_workers": 0,
        "on_bad_sample": "skip",  # skip (warn and count) | stop
        "verify": False,         # decode every sample before training, for a complete skipped count
        "depth_range": [0.0, 80.0],  # metres: depth metrics range and the card's display range
    },
    "model": {
        "backbone": "mobilenet_v2",  # mobilenet_v2 | tv_mobilenet_v2 | resnet18 | resnet34 | resnet50 (faces: resnet*)
        "decoder_width": 256,
        # the encoder's starting weights from a local file, no download: torchvision's ImageNet
        # mobilenet_v2-*.pth / resnet*-*.pth, a .safetensors of either, or a .tflite MobileNetV2
        "encoder_weights": None,
    },
    "face": {                        # task face_attributes only
        "head_width": 256,           # hidden units of the age, gender and race heads
        "age_mean": 33.0,            # the age head predicts (age - age_mean) / age_std (UTKFace: 33, 20)
        "age_std": 20.0,
    },
    "init": {
        "imagenet": False,           # ImageNet encoder weights (torchvision backbones)
        "on_missing_weights": "scratch",  # scratch | stop, when ImageNet weights cannot be had
        "reference_checkpoint": None,     # a reference .ckpt (DrSleep/multi-task-refinenet)
        "weights": None,                  # a hydranet .safetensors file
    },
    "losses": {
        "ignore_index": 255,
        "depth": "berhu",            # l1 | berhu | silog
        "berhu_threshold": 0.2,      # c = threshold * max |error| over the batch
        "silog_lambda": 0.5,
    },
    "balancing": {
        "kind": "fixed",             # fixed | uncertainty | dwa
        "weights": {"segm": 1.0, "depth": 1.0},  # for fixed
        "dwa_temperature": 2.0,
        "initial_log_variance": 0.0,  # for uncertainty
    },
    "optim": {
        "kind": "sgd",               # sgd | adamw
        "lr_encoder": 1.0e-3,
        "lr_decoder": 1.0e-2,        # decoder, heads and learned task weights
        "momentum": 0.9,
        "betas": [0.9, 0.999],
        "weight_decay": 1.0e-5,
        "grad_clip": 10.0,           # max gradient norm; 0 = off
        "amp": True,                 # mixed precision, used on CUDA only
    },
    "schedule": {
        "epochs": 10,
        "kind": "cosine",            # cosine | step | constant, after the warm-up
        "warmup_steps": 0,
        "warmup_start_factor": 0.1,
        "min_lr_factor": 0.01,       # cosine ends at lr * min_lr_factor
        "step_epochs": [],           # step: multiply by gamma at these epochs
        "gamma": 0.1,
    },
    "checkpoint": {
        "every_steps": 0,            # also write last.pt every N steps; 0 = per epoch only
        "best_metric": "miou",       # a validation metric name, e.g. miou, rmse, delta1
        "best_mode": "max",          # max | min
    },
    "logging": {
        "tensorboard": True,
        "sample_images": 4,          # validation frames shown in TensorBoard
        "progress": True,            # tqdm bar
    },
    "distributed": {                 # under torchrun (see the README, "Training on several GPUs")
        "backend": "auto",           # auto (nccl on CUDA, gloo on the CPU) | nccl | gloo
        "sync_batchnorm": None,      # null = on for depth_segmentation on several GPUs; true | false
        "scale_lr": False,           # scale optim.lr_* with the global batch (linear scaling; see README)
        "timeout_s": 600.0,          # a process waiting this long for the others stops the job
    },
    "provenance": {},                # extra model-card provenance entries (notes, licence ...)
}

FREE_FORM = {
    ("data", "options"), ("data", "train_options"), ("data", "val_options"),
    ("data", "transform"), ("data", "val_transform"), ("balancing", "weights"), ("provenance",),
}

# keys with a default that may still be set to null: no validation split trains without validation
NULLABLE = {("data", "val_split")}

# the keys of one data.extra_train_sets entry, and its kinds (data.kind's, plus a teacher's recording)
EXTRA_SET_KEYS = ("kind", "root", "split", "options", "transform")
EXTRA_SET_KINDS = ("folder", "cityscapes", "kitti", "nyud", "synthetic", "utkface", "teacher")

TASK_DATA_KINDS = {"face_attributes": ("utkface",)}  # every other kind is depth_segmentation's

CHOICES = {
    ("task",): ("depth_segmentation", "face_attributes"),  # the keys of weights.TASKS
    ("data", "kind"): ("folder", "cityscapes", "kitti", "nyud", "synthetic", "utkface"),
    ("data", "on_bad_sample"): ("skip", "stop"),
    ("model", "backbone"): ("mobilenet_v2", "tv_mobilenet_v2", "resnet18", "resnet34", "resnet50"),
    ("init", "on_missing_weights"): ("scratch", "stop"),
    ("losses", "depth"): ("l1", "berhu", "silog"),
    ("balancing", "kind"): ("fixed", "uncertainty", "dwa"),
    ("optim", "kind"): ("sgd", "adamw"),
    ("schedule", "kind"): ("cosine", "step", "constant"),
    ("checkpoint", "best_mode"): ("max", "min"),
    ("distributed", "backend"): ("auto", "nccl", "gloo"),
}

POSITIVE = {("data", "batch_size"), ("data", "val_batch_size"), ("schedule", "epochs"),
            ("optim", "lr_encoder"), ("optim", "lr_decoder"), ("face", "head_width"), ("face", "age_std"),
            ("distributed", "timeout_s")}
NON_NEGATIVE = {("threads",), ("data", "num_workers"), ("schedule", "warmup_steps"), ("optim", "weight_decay"),
                ("optim", "grad_clip"), ("checkpoint", "every_steps"), ("logging", "sample_images")}
# null-default keys whose value, when set, must be a boolean or a positive integer
OPTIONAL_BOOL = {("distributed", "sync_batchnorm")}
OPTIONAL_POSITIVE_INT = {("data", "global_batch_size")}
