"""The meta-learning service (port 3002): per-learner meta phases, metrics measured from the
learner's training state, retention boosts and transfer efficiency, pause/resume."""
