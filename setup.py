"""routerlab: VROOM, VERB and B4 reproduced with real routing software on real Linux networking."""
from setuptools import find_packages, setup

setup(
    name="routerlab",
    version="0.1.0",
    description="Mininet-based testbed reproducing VROOM, VERB and B4 with real daemons, OVS and CRIU",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["routerlab*", "b4*", "vroom*", "verb*"]),
    include_package_data=True,
    entry_points={
        "console_scripts": ["routerlab = routerlab.cli:main"],
        # Each system declares itself once (routerlab.systems.System); the substrate finds
        # systems only here.
        "routerlab.systems": [
            "b4 = b4.system:SYSTEM",
            "verb = verb.system:SYSTEM",
            "vroom = vroom.system:SYSTEM",
        ],
    },
)
