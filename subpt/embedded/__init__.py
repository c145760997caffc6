"""The embedded default: a procedural image-caption world and a tiny CLIP pretrained on it, offline."""
