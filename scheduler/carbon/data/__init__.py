"""Shipped intensity data. A package so setup.py's `*.csv` package_data ships it in wheels.

`gb_2020_ci.csv`, `de_2020_ci.csv`: copied unchanged from dos-group/lets-wait-awhile
("Let's Wait Awhile" paper data, derived from national grid operators / ENTSO-E; see that
project for the licence). Columns `Time,Carbon Intensity`, gCO2/kWh, UTC timestamps
(the rows run straight through the DST changes), 30 min (GB) / 15 min (DE) steps.

`country_intensity.csv`: yearly averages per country; sources in its header.
"""
