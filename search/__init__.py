"""The requirement-driven search (`collabopt search`): space, strategies, estimates, trials, driver, report."""
