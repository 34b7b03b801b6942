"""The notebooks (*.ipynb) and strip.py, which keeps their committed form reviewable."""
