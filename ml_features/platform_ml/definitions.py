"""The ML code location: loads and merges, the work lives in assets.py."""

import dagster as dg
from platform_shared import load_settings

from .assets import churn_model, churn_model_evaluation, customer_features
from .resources import build_resources


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(
        assets=[customer_features, churn_model, churn_model_evaluation],
        resources=build_resources(load_settings()),
    )
