"""A small retrieval agent.

Input: ``{"question": "...", "files": ["path", ...]}`` (files optional once indexed), or just
the question as a string. Each file is split into chunks, embedded and stored in the agent's
vector collection; the agent-wide KV remembers each file's content hash so unchanged files
are not embedded again. The answer is generated from the closest chunks.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from roost import AgentContext
from roost.protocol import VectorItem

COLLECTION = "docs"
CHUNK_WORDS = 80


def chunks_of(text: str, size: int = CHUNK_WORDS) -> list[str]:
    """Paragraph-aware chunks of about ``size`` words."""
    chunks: list[str] = []
    current: list[str] = []
    for paragraph in (p.strip() for p in text.split("\n\n")):
        if not paragraph:
            continue
        words = paragraph.split()
        if current and len(current) + len(words) > size:
            chunks.append(" ".join(current))
            current = []
        current.extend(words)
        while len(current) > size:
            chunks.append(" ".join(current[:size]))
            current = current[size:]
    if current:
        chunks.append(" ".join(current))
    return chunks


async def index_file(ctx: AgentContext, path: Path) -> int:
    """Embed and store ``path``'s chunks unless it is unchanged since last time."""
    text = path.read_text(encoding="utf-8", errors="replace")
    digest = hashlib.sha256(text.encode()).hexdigest()
    store = ctx.kv.shared()
    key = f"indexed:{path.resolve()}"
    if await store.get_text(key) == digest:
        return 0
    old_count = int(await store.get_text(f"{key}:chunks") or 0)
    if old_count:
        await ctx.vectors.delete(COLLECTION, [f"{path.resolve()}#{i}" for i in range(old_count)])
    chunks = chunks_of(text)
    vectors = await ctx.embed(chunks) if chunks else []
    items = [
        VectorItem(
            id=f"{path.resolve()}#{i}",
            vector=vector,
            text=chunk,
            metadata={"path": str(path), "chunk": i},
        )
        for i, (chunk, vector) in enumerate(zip(chunks, vectors, strict=True))
    ]
    if items:
        await ctx.vectors.upsert(COLLECTION, items)
    await store.put(key, digest)
    await store.put(f"{key}:chunks", str(len(chunks)))
    return len(chunks)


async def run(ctx: AgentContext, input: Any) -> dict[str, Any]:
    if isinstance(input, str):
        question, files = input, []
    else:
        question, files = input.get("question", ""), input.get("files", [])
    if not question:
        raise ValueError("give a question: {'question': '...', 'files': [...]}")

    for name in files:
        path = Path(name)
        if path.is_dir():
            paths = sorted(p for p in path.rglob("*") if p.suffix in {".md", ".txt"})
        else:
            paths = [path]
        for file in paths:
            added = await index_file(ctx, file)
            await ctx.emit(f"indexed {file}" if added else f"unchanged {file}", chunks=added)

    [query] = await ctx.embed(question)
    hits = await ctx.vectors.search(COLLECTION, query, k=3)
    if not hits:
        return {"answer": "I have no documents yet: pass some with 'files'.", "sources": []}
    context = "\n\n".join(f"[{i + 1}] {hit.text}" for i, hit in enumerate(hits))
    result = await ctx.infer(
        f"Context:\n{context}\n\nUsing only the context, answer briefly: {question}",
        system="You answer questions from the given context.",
        max_tokens=160,
    )
    return {
        "answer": result.message.content.strip(),
        "sources": [
            {
                "path": h.metadata.get("path"),
                "chunk": h.metadata.get("chunk"),
                "distance": round(h.distance, 4),
            }
            for h in hits
        ],
    }
