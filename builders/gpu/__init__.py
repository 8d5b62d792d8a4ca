"""The ``gpu`` target: TensorRT engines (or ONNX Runtime's TensorRT execution provider) for the
text encoder and the ranker, on NVIDIA GPU nodes.

* ``profiles``   optimisation profiles derived from the model configs' batch and sequence ranges
* ``naming``     engine file names per compute capability and TensorRT version
* ``trtexec``    the exact ``trtexec`` command lines (and the chart's ``engines.txt``)
* ``calibration_cache``  INT8 calibration caches from the generated shop data (computed on CPU)
* ``specs``      ``tensorrt_plan`` (or onnxruntime + TensorRT EP) configs for the repository
* ``engine``     building and checking engines: needs TensorRT and a GPU, imported lazily
* ``target``     the build step of ``--target gpu``: configs, calibration caches, engines where possible

NOT RUN ON THE PROJECT'S MACHINES: the TensorRT builder cannot be installed there (see
docs/gpu.md). Everything except ``engine.build``/``engine.parity`` is unit-tested without it.
"""
