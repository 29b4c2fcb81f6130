async def test_index_lists_every_model_with_metadata(client):
    resp = await client.get("/v2/models/")
    assert resp.status == 200
    models = {m["id"]: m for m in (await resp.json())["models"]}
    assert set(models) == {"legacy", "modern", "static"}
    # Metadata keys override the default name.
    assert models["legacy"]["name"] == "legacy-model"
    assert models["legacy"]["links"] == [{"rel": "self", "href": "/v2/models/legacy"}]
    assert models["legacy"]["author"] == "DEEPaaS fixtures"


async def test_show_one_model(client):
    resp = await client.get("/v2/models/static/")
    assert resp.status == 200
    body = await resp.json()
    assert body["id"] == "static"
    assert body["name"] == "static-model"
    assert body["links"] == [{"rel": "self", "href": "/v2/models/static"}]


async def test_unknown_model_is_404_json(client):
    resp = await client.get("/v2/models/nope/")
    assert resp.status == 404
    assert await resp.json() == {"message": "Model 'nope' not found"}


async def test_versions(client):
    resp = await client.get("/")
    assert resp.status == 200
    body = await resp.json()
    assert body["versions"] == [
        {
            "version": "stable",
            "id": "v2",
            "links": [{"rel": "self", "type": "application/json", "href": "/v2/"}],
        }
    ]
    rels = {link["rel"]: link["href"] for link in body["links"]}
    assert rels == {"help": "/api", "describedby": "/swagger.json"}


async def test_v2_version(client):
    resp = await client.get("/v2/")
    assert resp.status == 200
    assert (await resp.json())["id"] == "v2"


async def test_unknown_path_is_404_json(client):
    resp = await client.get("/nothing/here")
    assert resp.status == 404
    assert "message" in await resp.json()
