"""The data contract: a shop's catalogue, users and events in, validated ``ShopData`` out (docs/data.md).

* ``contract``: the tables, their columns and rules;
* ``config``: ``shoprank.yaml``, the build config;
* ``load``: reading Parquet/CSV files column by column, every problem named;
* ``dataset``: the rules across rows and files, ranked lists, time split -> ``ShopData``;
* ``report``: the validation report;
* ``demo``: the generated demo shop written in the contract's format.
"""
