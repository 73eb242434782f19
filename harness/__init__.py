"""Process harness for the tests and the load tests: a private redis-server, real service
processes and whole fleets (one process per service, or `honcho start` on the Procfile), each on
free ports so nothing touches an operator's fleet on the documented ports.

Not part of the deployed fleet (the wheel and the image leave it out): it runs from the
repository, where both `tests/` and `loadtests/` import it. It stops only the processes it
started, by their process group.
"""
