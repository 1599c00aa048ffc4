//! Raven Slingshot: one `credential_provider!` block.

credential_provider! {
    /// Raven Slingshot credentials: your API key and the grower's access key and shared
    /// secret, which sign every request (no OAuth).
    RavenSlingshot {
        name: "Raven Slingshot",
        title: "Raven Slingshot",
        slug: "raven-slingshot-credentials",
        object: "ravenSlingshotCredentials",
        operation: "raven_slingshot",
        request: RavenSlingshotCredentialsRequest,
        response: RavenSlingshotCredentials,
        fields: {
            /// Your API key from Slingshot (`X-SS-APIKey`).
            required secret api_key: String,
            /// The grower's access key (`X-SS-AccessKey`).
            required secret access_key: String,
            /// The shared secret that signs requests.
            required secret shared_secret: String,
        },
        extras: {},
        // Slingshot's API host ("Access Key - Summary" in its developer documentation).
        check: CheckKind::SignedAccessKey(Endpoints::published("https://api.ravenslingshot.com")),
        example: {
            "apiKey": "your-api-key",
            "accessKey": "grower-access-key",
            "sharedSecret": "grower-shared-secret"
        },
    }
}
