//! Sentera: one `credential_provider!` block, with a field answers never show.

credential_provider! {
    /// Sentera credentials: the grower's login and organization. The password is kept, sealed,
    /// but never shown in an answer.
    Sentera {
        name: "Sentera",
        title: "Sentera FieldAgent",
        slug: "sentera-credentials",
        object: "senteraCredentials",
        operation: "sentera",
        request: SenteraCredentialsRequest,
        response: SenteraCredentials,
        fields: {
            /// The grower's Sentera login (an email).
            required plain username: String,
            /// The name of the grower's organization in Sentera.
            required plain organization_name: String,
        },
        write_only: {
            /// The grower's Sentera password (never shown in an answer).
            required secret password: String,
        },
        extras: {
            /// The session token Sentera issued, once a login ran.
            auth_token: Option<String>,
            /// The organization's id in Sentera, once a login found it.
            organization_id: Option<String>,
        },
        // Sentera's API host: `/v1/sessions` (its legacy login) and `/graphql` under it.
        check: CheckKind::SenteraSession(Endpoints::published("https://api.sentera.com")),
        example: {
            "username": "grower@example.com",
            "password": "grower-password",
            "organizationName": "Grower Farms"
        },
    }
}
