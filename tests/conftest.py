# Plain pytest hangs on tests that start nameko containers unless eventlet patches the
# standard library before anything else is imported (STACK.md). Keep these lines first.
import eventlet

eventlet.monkey_patch()
