"""Torch-free runtime a device application embeds: bundle loading, preprocessing, prediction."""
