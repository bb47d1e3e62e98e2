"""The scripts that make the book's held-out results and the shipped model.

Run each from the repository's root as a module, for example
``python -m experiments.train_best``; ``experiments.common`` holds what they
share (the texts and their split, the count models, the training recipe).
"""
