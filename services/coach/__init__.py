"""The coach service (port 3004): the auto-coach loop over the learner population, fast lane,
boost / hyper-boost and the meta trigger."""
