"""Harnesses that exercise the product from outside: camera-like photos, HTTP load and soak, kill campaigns, fuzzing.

Tests and the long runs (`python -m fmnist_edge.harness.<name>`) import them; the kiosk runtime never does.
"""
