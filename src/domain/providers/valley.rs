//! Valley: one `credential_provider!` block, with a field answers never show.

credential_provider! {
    /// Valley credentials: your key and initialization vector and the grower's login. The
    /// password is kept, sealed, but never shown in an answer.
    Valley {
        name: "Valley",
        title: "Valley Irrigation",
        slug: "valley-credentials",
        object: "valleyCredentials",
        operation: "valley",
        request: ValleyCredentialsRequest,
        response: ValleyCredentials,
        fields: {
            /// Your application's id from Valley.
            required plain apid: String,
            /// Your initialization vector.
            required secret initialization_vector: String,
            /// Your key.
            required secret key: String,
            /// The grower's Valley username.
            required plain username: String,
        },
        write_only: {
            /// The grower's Valley password (never shown in an answer).
            required secret password: String,
        },
        extras: {},
        check: CheckKind::Unchecked(
            "Valley publishes no way to check a credential: its status is the starting value, not a verdict",
        ),
        example: {
            "apid": "your-apid",
            "initializationVector": "your-initialization-vector",
            "key": "your-key",
            "username": "grower",
            "password": "grower-password"
        },
    }
}
