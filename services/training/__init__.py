"""Training service (port 3001): learners, the learner model, the selection engine, rounds."""
