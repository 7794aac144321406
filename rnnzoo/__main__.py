"""``python -m rnnzoo`` runs the CLI (and so does ``torchrun -m rnnzoo train ...``)."""

from rnnzoo.launch import main

main()
