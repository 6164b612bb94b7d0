"""The work queue: bounded priority classes, a worker pool, deadlines, backpressure, throttling."""
