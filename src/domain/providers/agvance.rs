//! AgVance: one `credential_provider!` block.

credential_provider! {
    /// AgVance credentials: your API key and the grower's database and login.
    Agvance {
        name: "AgVance",
        title: "AgVance",
        slug: "agvance-credentials",
        object: "agvanceCredentials",
        operation: "agvance",
        request: AgvanceCredentialsRequest,
        response: AgvanceCredentials,
        fields: {
            /// Your API key from AgVance (a developer or a production key).
            required secret api_key: String,
            /// The grower's AgVance database id.
            required plain database_id: String,
            /// The grower's AgVance username.
            required plain username: String,
            /// The grower's AgVance password.
            required secret password: String,
            /// Which AgVance environment the key belongs to; `STAGE` when absent.
            optional environment client_environment: Option<ClientEnvironment> = "STAGE",
        },
        extras: {
            /// The session id AgVance issued, once a login ran.
            session_id: Option<String>,
        },
        // AgVance publishes its host (api.agvance.net), not its login path: configured.
        check: CheckKind::AgvanceLogin(Endpoints::UNPUBLISHED),
        example: {
            "apiKey": "your-api-key",
            "databaseId": "grower-database-id",
            "username": "grower",
            "password": "grower-password",
            "clientEnvironment": "STAGE"
        },
    }
}
