"""Serving models on the pool: a `service` job is a Ray Serve application whose replicas
run on the nodes the scheduler allocated (`driver.py` deploys it, `app.py` is the
replica, `model.py` loads a model artifact as a predict function)."""
