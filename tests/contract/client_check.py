"""A client generated from the node's OpenAPI document, driving a real node.

tests/it/contract.rs generates the package `yui_client` with
openapi-python-client from /api/v1/openapi.json, puts it on PYTHONPATH and
runs this with YUI_CONTRACT_BASE and YUI_CONTRACT_TOKEN. It creates, reads,
updates, lists and searches records of two collections, a shared one
(knowledge) and a local one (workers), through the generated functions and
models only: every answer is parsed into the generated types, so an answer
that the document does not describe fails here. Prints "client: all checks
passed" at the end.
"""

import os
import sys

from yui_client import AuthenticatedClient
from yui_client.api.knowledge import (
    create_knowledge,
    get_knowledge,
    list_knowledge,
    update_knowledge,
)
from yui_client.api.search import search
from yui_client.api.workers import create_workers, get_workers, list_workers, update_workers
from yui_client.models import (
    Error,
    KnowledgeCreate,
    KnowledgeFields,
    KnowledgeFieldsCategory,
    KnowledgePage,
    KnowledgePatch,
    KnowledgeRecord,
    KnowledgeUpdate,
    ListWorkersStatus,
    SearchCollection,
    SearchResponse200,
    WorkersCreate,
    WorkersFields,
    WorkersFieldsStatus,
    WorkersPage,
    WorkersPatch,
    WorkersPatchStatus,
    WorkersRecord,
    WorkersUpdate,
)


def check(condition, what):
    if not condition:
        print(f"client: FAILED: {what}")
        sys.exit(1)
    print(f"client: ok: {what}")


def main():
    client = AuthenticatedClient(
        base_url=os.environ["YUI_CONTRACT_BASE"],
        token=os.environ["YUI_CONTRACT_TOKEN"],
        raise_on_unexpected_status=True,
    )
    with client as c:
        # knowledge (shared)
        article = create_knowledge.sync(
            client=c,
            body=KnowledgeCreate(
                fields=KnowledgeFields(
                    title="在宅ワーカーの時間管理",
                    body="朝に一日の予定を立て、\n夕方に振り返る。",
                    category=KnowledgeFieldsCategory.WORKER_MANAGEMENT,
                    tags=["時間管理", "在宅"],
                )
            ),
        )
        check(isinstance(article, KnowledgeRecord), f"created knowledge {getattr(article, 'id', article)}")
        check(article.collection == "knowledge" and article.fields.title == "在宅ワーカーの時間管理", "its fields came back")
        read = get_knowledge.sync(client=c, id=article.id)
        check(isinstance(read, KnowledgeRecord) and read.fields.body == article.fields.body, "read it back")
        updated = update_knowledge.sync(
            client=c,
            id=article.id,
            body=KnowledgeUpdate(fields=KnowledgePatch(body="朝に一日の予定を立て、\n昼と夕方に振り返る。", tags=None)),
        )
        check(isinstance(updated, KnowledgeRecord) and "昼と夕方" in updated.fields.body, "updated the body")
        check(not updated.fields.tags, "null removed the tags")
        page = list_knowledge.sync(client=c, limit=10)
        check(isinstance(page, KnowledgePage) and any(r.id == article.id for r in page.items), "listed it")

        # workers (local)
        worker = create_workers.sync(
            client=c,
            body=WorkersCreate(
                fields=WorkersFields(name="信濃 太郎", name_kana="しなの たろう", status=WorkersFieldsStatus.IN_TRAINING, hours_per_week=12.5)
            ),
        )
        check(isinstance(worker, WorkersRecord), f"created a worker {getattr(worker, 'id', worker)}")
        again = get_workers.sync(client=c, id=worker.id)
        check(isinstance(again, WorkersRecord) and again.fields.name == "信濃 太郎", "read the worker back")
        active = update_workers.sync(
            client=c, id=worker.id, body=WorkersUpdate(fields=WorkersPatch(status=WorkersPatchStatus.ACTIVE))
        )
        check(isinstance(active, WorkersRecord) and active.fields.status.value == "active", "updated the worker's status")
        workers = list_workers.sync(client=c, status=ListWorkersStatus.ACTIVE)
        check(isinstance(workers, WorkersPage) and [w.id for w in workers.items] == [worker.id], "listed the active workers")
        none = list_workers.sync(client=c, status=ListWorkersStatus.LEFT)
        check(isinstance(none, WorkersPage) and none.items == [], "a filter that matches nothing")

        # search, across collections and in one
        found = search.sync(client=c, q="振り返る")
        check(isinstance(found, SearchResponse200) and any(isinstance(r, KnowledgeRecord) and r.id == article.id for r in found.items), "found the article by a word")
        found = search.sync(client=c, q="信濃", collection=SearchCollection.WORKERS)
        check(isinstance(found, SearchResponse200) and [r.id for r in found.items] == [worker.id] and isinstance(found.items[0], WorkersRecord), "found the worker in workers")

        # an error answers in the documented shape
        refused = create_knowledge.sync(
            client=c,
            body=KnowledgeCreate(fields=KnowledgeFields(title="", body="", category=KnowledgeFieldsCategory.OTHER, tags=["x" * 41])),
        )
        check(isinstance(refused, Error) and refused.error.code == "validation_failed", "a too long tag is refused as validation_failed")
    print("client: all checks passed")


if __name__ == "__main__":
    main()
