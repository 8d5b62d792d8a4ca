"""The Triton repository: typed model specs and configs, assembly and validation, the in-process pipeline."""
