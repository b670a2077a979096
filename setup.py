"""Packages are found, not listed: the repository root is the package `collabopt`, and every folder
under it that holds an __init__.py is `collabopt.<folder>`: the wheel holds exactly what the
development tree imports (tests/test_packaging.py compares the two)."""
from setuptools import find_packages, setup
from setuptools.command.build_py import build_py


class BuildPy(build_py):
    def find_package_modules(self, package, package_dir):
        # This file sits in the package root but is the build script, not a module of collabopt.
        return [m for m in super().find_package_modules(package, package_dir)
                if (m[0], m[1]) != ("collabopt", "setup")]


setup(package_dir={"collabopt": "."},
      packages=["collabopt", *(f"collabopt.{p}" for p in find_packages(where="."))],
      cmdclass={"build_py": BuildPy})
