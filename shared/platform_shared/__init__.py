"""The library every code location installs: keys, catalog, settings, warehouse."""

from .catalog import Catalog as Catalog
from .catalog import CatalogTable as CatalogTable
from .catalog import ColumnPolicy as ColumnPolicy
from .catalog import load_catalog as load_catalog
from .catalog import safe_name as safe_name
from .errors import CatalogError as CatalogError
from .errors import PlatformError as PlatformError
from .errors import WarehouseError as WarehouseError
from .keys import ANALYTICS_TEAM as ANALYTICS_TEAM
from .keys import HISTORY_SUFFIX as HISTORY_SUFFIX
from .keys import ML_TEAM as ML_TEAM
from .keys import PLATFORM_TEAM as PLATFORM_TEAM
from .keys import RAW_SCHEMA as RAW_SCHEMA
from .keys import RECONCILE_CHECK as RECONCILE_CHECK
from .keys import TEAMS as TEAMS
from .keys import raw_asset_key as raw_asset_key
from .settings import Settings as Settings
from .settings import load_settings as load_settings
from .warehouse import RUN_EXECUTOR as RUN_EXECUTOR
from .warehouse import Warehouse as Warehouse
from .warehouse import build_warehouse as build_warehouse
from .warehouse import replace_table as replace_table
from .warehouse import table_metadata as table_metadata
from .warehouse import warehouse_pool as warehouse_pool
from .warehouse import write_dataframe as write_dataframe
