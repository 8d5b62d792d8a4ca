"""Compressed variants of the text encoder and the ranker, each a measured build step.

One module per technique, each a plain function from a reference model to a variant file:

* ``graph``     offline graph optimisation / fusion (ONNX Runtime's optimizers)
* ``quantize``  INT8: dynamic (weights only) and static (activations calibrated on the shop's data)
* ``prune``     structured pruning of the ranker's deep tower and cross layers, then fine-tuning
* ``lowrank``   low-rank factorisation of the ranker's embedding tables and cross layers, then fine-tuning
* ``distill``   a 2-layer text encoder distilled from MiniLM on the shop's titles and queries

``evaluate`` measures every variant the same way (size, in-process latency and throughput, NDCG@10
and AUC on the test split, cosine to the teacher); ``gate`` refuses a variant whose NDCG@10 falls
more than a margin below the reference; ``run`` builds them all: ``python -m builders variants``.
"""
