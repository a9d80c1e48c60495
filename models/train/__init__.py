"""Training of the embedded default model (tiny StreamingT2V on the synthetic world, issue 6).

Run everything (CPU, 1 thread per process, about an hour): ``/usr/bin/python3 -m models.train.all --out DIR``.
"""
