from glob import glob

from setuptools import find_packages, setup

PACKAGE = "hydranet_ros"

# The torch/torchvision pair both README commands install (extra "torch"): the one place
# for the pins. PyPI's CUDA build, which runs on the CPU as well; leave the extra out to
# keep a pair installed for another CUDA version.
TORCH_PAIR = ["torch==2.14.1", "torchvision==0.29.1"]

# ROS 2 Jazzy from PyPI (extra "ros"): real rclpy over Fast DDS for the node and its tests
# without a ROS installation. The wheels exist for Linux x86_64 (CPython 3.10-3.13) only;
# elsewhere the extra installs nothing, and where ROS 2 is sourced the README's command
# asks for "system-ros" instead, so that the installation's own rclpy is the one used.
ON_ROS_WHEEL_PLATFORMS = ('platform_system == "Linux" and platform_machine == "x86_64" '
                          'and python_version < "3.14"')
ROS_WHEELS = [f"{name}; {ON_ROS_WHEEL_PLATFORMS}" for name in (
    "ros-jazzy-rclpy", "ros-jazzy-sensor-msgs", "ros-jazzy-std-msgs", "ros-jazzy-std-srvs",
    "ros-jazzy-diagnostic-msgs", "ros-jazzy-rmw-fastrtps-cpp")]

setup(
    name=PACKAGE,
    version="0.1.0",
    description="Joint depth and semantic segmentation (HydraNet) for ROS 2, with training, replay and benchmark tools",
    packages=find_packages(exclude=["test", "test.*"]),
    python_requires=">=3.10",
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz") + glob("config/*.xml")),
        (f"share/{PACKAGE}/weights", glob("weights/*.safetensors")),
    ],
    package_data={PACKAGE: ["py.typed"]},
    install_requires=[
        "numpy",
        "torch>=2.1",
        "torchvision>=0.16",
        # cv_bridge is built against OpenCV 4; OpenCV 5's Python module breaks it
        "opencv-python>=4.5,<5",
        "safetensors>=0.4",
        # bagio uses rosbags' ROS 1 -> ROS 2 message converter, which rosbags does not export:
        # pinned to the minor release it is tested with
        "rosbags>=0.11.7,<0.12",
        # cv_bridge's ROS-free twin: the same image conversions where ROS 2 is not installed
        "rosbags-image>=0.10,<0.11",
        "pyyaml",
        "tqdm",
        # training logs scalars and sample predictions to TensorBoard
        "tensorboard",
        # the CPU fast path: backend "auto" on the CPU exports the network (onnx) and runs
        # it in ONNX Runtime, twice as fast as eager at 640x480 (README, Speed); GPU users may
        # add onnxruntime-gpu for the onnxruntime and tensorrt backends on CUDA
        "onnx>=1.15",
        "onnxruntime>=1.17",
    ],
    extras_require={
        # kept so that existing `pip install .[onnx]` commands still work; both are required now
        "onnx": ["onnx>=1.15", "onnxruntime>=1.17"],
        # TensorFlow Lite files: the ImageNet MobileNetV2 encoder start (tflite: the schema's
        # parser) and .tflite teachers for distillation (ai-edge-litert: Google's interpreter)
        "tflite": ["tflite>=2.10", "ai-edge-litert>=1.2"],
        # pytest-xdist: the suite runs in two processes (`-n 2`), since each test keeps torch to
        # one thread; on 2 cores that halves its 9 minutes
        "test": ["pytest", "pytest-xdist", "onnx>=1.15", "onnxruntime>=1.17", "tflite>=2.10", "ai-edge-litert>=1.2"],
        "torch": TORCH_PAIR,
        "ros": ROS_WHEELS,
        "system-ros": [],   # ROS 2 is sourced: its rclpy, sensor_msgs ... are used as they are
    },
    zip_safe=True,
    entry_points={
        "console_scripts": [
            "hydranet_node = hydranet_ros.node.main:main",
            "hydranet_convert = hydranet_ros.tools.convert:main",
            "hydranet_train = hydranet_ros.training.train:main",
            "hydranet_replay = hydranet_ros.offline.replay:main",
            "hydranet_bench = hydranet_ros.tools.bench:main",
            "hydranet_export = hydranet_ros.tools.export:main",
            "hydranet_faces = hydranet_ros.tools.faces:main",
            "hydranet_segeval = hydranet_ros.tools.segeval:main",
        ],
    },
)
