//! Raven: one `credential_provider!` block.

credential_provider! {
    /// Raven credentials: your application's client id and secret and the grower's refresh token.
    Raven {
        name: "Raven",
        title: "Raven",
        slug: "raven-credentials",
        object: "ravenCredentials",
        operation: "raven",
        request: RavenCredentialsRequest,
        response: RavenCredentials,
        fields: {
            /// Your application's client id from Raven.
            required plain client_id: String,
            /// Your application's client secret.
            required secret client_secret: String,
            /// The grower's refresh token.
            required secret refresh_token: String,
        },
        extras: {
            /// The current access token, once one has been issued.
            access_token: Option<String>,
            /// What the provider said about the current token.
            token_metadata: TokenMetadata,
        },
        // AgSync's identity server, from Raven's sample code rather than its documentation
        // (the README says so); it accepts the client in the form or by Basic.
        check: CheckKind::OAuthRefresh(OAuthCheck {
            client_auth: ClientAuth::Body { id: "clientId", secret: "clientSecret" },
            production_token_url: Some("https://auth.agsync.com/core/connect/token"),
            stage_token_url: None,
        }),
        example: {
            "clientId": "your-client-id",
            "clientSecret": "your-client-secret",
            "refreshToken": "grower-refresh-token"
        },
    }
}
