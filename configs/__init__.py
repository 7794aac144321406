"""The shipped configs, installed as the package rnnzoo.configs (see setup.py)."""
