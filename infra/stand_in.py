"""The local AWS stand-in: moto's server with repairs to DynamoDB's TransactWriteItems and Query.

moto 5.2 backs up the whole table (a deep copy) once per item of every transaction and
rolls a cancelled transaction back by putting that copy in place of the table. So:

* a transaction costs O(items x table size): ~10 ms on an empty table, ~100 ms once it
  holds a thousand items, which makes local billing runs measure moto, not our code;
* two concurrent transactions are not isolated: rolling one back restores a copy taken
  before the other committed, and the other's writes vanish.

Here every write (transactions and single-item puts, updates and deletes) runs under one
lock, and a transaction's rollback restores only the items it touched, from copies taken
under that lock before it started. All-or-nothing and per-item cancellation reasons are
moto's own; only the bookkeeping around them changes.

moto also sorts every item of the table to answer any query; a query on the table itself
(not an index) here reads only its own partition.

Run as `python stand_in.py -H 127.0.0.1 -p PORT` (the same arguments as `moto_server`).
"""

import copy
import sys
import threading

import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table
from moto.server import main

_writes = threading.RLock()
_in_transaction = threading.local()


class _CopyExceptTablesInTransactions:
    """Stands in for the `copy` module inside moto's DynamoDB backend: the per-item table
    backups of a transaction become the table itself (rolling back to it is a no-op),
    because the wrapper below keeps the touched items instead."""

    def __getattr__(self, name):
        return getattr(copy, name)

    @staticmethod
    def deepcopy(value, *args, **kwargs):
        if isinstance(value, Table) and getattr(_in_transaction, "active", False):
            return value
        return copy.deepcopy(value, *args, **kwargs)


dynamodb_models.copy = _CopyExceptTablesInTransactions()


def _item_key(backend, operation_type, operation):
    table = backend.tables.get(operation.get("TableName"))
    if table is None:
        return None
    if operation_type == "Put":
        attributes = operation["Item"]
        key = {table.hash_key_attr: attributes[table.hash_key_attr]}
        if table.range_key_attr is not None:
            key[table.range_key_attr] = attributes[table.range_key_attr]
        return key
    return operation.get("Key")


def _serialised(method):
    def locked(self, *args, **kwargs):
        with _writes:
            return method(self, *args, **kwargs)

    return locked


_transact_write_items = DynamoDBBackend.transact_write_items


def _transact_write_items_touching_only_its_items(self, transact_items):
    with _writes:
        before = []
        for entry in transact_items:
            operation_type, operation = next(iter(entry.items()))
            key = _item_key(self, operation_type, operation)
            if key is None:
                continue
            table_name = operation["TableName"]
            try:
                current = self.get_item(table_name, key)
            except Exception:
                # A malformed key: moto's own validation answers the request.
                continue
            snapshot = copy.deepcopy(current.to_json()["Attributes"]) if current else None
            before.append((table_name, key, snapshot))
        _in_transaction.active = True
        try:
            return _transact_write_items(self, transact_items)
        except Exception:
            for table_name, key, snapshot in reversed(before):
                if snapshot is None:
                    if self.get_item(table_name, key) is not None:
                        self.delete_item(table_name, key)
                else:
                    self.put_item(table_name, snapshot)
            raise
        finally:
            _in_transaction.active = False


_table_query = Table.query
_table_all_items = Table.all_items
_queried_partition = threading.local()


def _all_items_of_the_queried_partition(self):
    hash_key = getattr(_queried_partition, "key", None)
    if hash_key is None:
        return _table_all_items(self)
    partition = self.items.get(hash_key)
    if not partition:
        return []
    items = list(partition.values()) if self.range_key_attr else [partition]
    return sorted(items, key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key)


def _query_reading_only_its_partition(self, hash_key, *args, **kwargs):
    """moto sorts the whole table to answer any query on it; a query without an index
    needs only its own partition, which moto keeps apart already."""
    if kwargs.get("index_name") or (len(args) > 6 and args[6]):
        return _table_query(self, hash_key, *args, **kwargs)
    with _writes:
        _queried_partition.key = hash_key
        try:
            return _table_query(self, hash_key, *args, **kwargs)
        finally:
            _queried_partition.key = None


Table.all_items = _all_items_of_the_queried_partition
Table.query = _query_reading_only_its_partition
DynamoDBBackend.transact_write_items = _transact_write_items_touching_only_its_items
for _name in ("put_item", "update_item", "delete_item", "batch_write_item"):
    if hasattr(DynamoDBBackend, _name):
        setattr(DynamoDBBackend, _name, _serialised(getattr(DynamoDBBackend, _name)))

if __name__ == "__main__":
    sys.argv[0] = "moto_server"
    sys.exit(main())
