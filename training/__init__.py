"""Training of score networks and noise-conditional classifiers with accelerate (installed as ``scorekit.training``).

The trainers land with the training issue; this package holds the layout the project card fixes.
"""
