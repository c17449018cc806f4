"""Domain verbs by table group, each a mixin over `storage.database.Records`; `storage.store`
combines them into the one `Store`. A group that calls another group's verbs subclasses it, so
its bases say what it depends on."""
