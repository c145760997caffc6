"""subpt: CoOp, Subspace Prompt Tuning and the Novel Feature Learner on open_clip."""
