"""Dense tasks (detection and segmentation) with frozen CLIP towers and transferred prompts."""
