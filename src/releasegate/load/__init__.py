"""Load testing: Locust profiles, the runner that drives them, and the capacity judgement.

The gate's own process never imports locust (its import monkey-patches the whole process
with gevent); the runner starts Locust in a subprocess and reads its results back as plain data.
Profiles (loadtests/profiles/*.yaml) are parsed here by `releasegate.load.profiles`.

    profiles     the profile files (LoadProfile)                               pure
    thresholds   k6-style thresholds: parse, merge, evaluate                   pure
    results      raw samples -> LoadSummary, and the load check's judgement    pure
    safety       where load may go (loopback, load.allowed_hosts)              pure
    runner       the gate's side: bounds, the Locust subprocess, LoadRun       no locust
    gate         LoadRuns, the load stage's shared fixture object              no locust
    capacity     infra.capacity: resource snapshots and the sizing rules       no locust
    run          `python -m releasegate.load.run`: Locust in library mode      imports locust
    artifacts    the latency-over-time PNG (matplotlib, in the subprocess)
"""
