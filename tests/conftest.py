# Plain pytest hangs on tests that start nameko containers unless eventlet patches the
# standard library before anything else is imported (STACK.md). Keep these lines first.
import os

# hypothesis loads other packages' plugins (e.g. trio's, which Selenium brings) when it is first
# imported; trio cannot be imported under eventlet's patching, so no plugins.
os.environ.setdefault("HYPOTHESIS_NO_PLUGINS", "1")
# the fake billing systems the tests start listen here (a connector may call only the hosts listed)
os.environ.setdefault("CONNECTOR_ALLOWED_HOSTS", "127.0.0.1,localhost")

import eventlet  # noqa: E402

eventlet.monkey_patch()
