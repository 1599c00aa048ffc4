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
        // Raven publishes no token endpoint: configure it (see the README).
        check: CheckKind::OAuthRefresh(OAuthCheck::unpublished(
            ClientAuth::Body { id: "clientId", secret: "clientSecret" },
        )),
        example: {
            "clientId": "your-client-id",
            "clientSecret": "your-client-secret",
            "refreshToken": "grower-refresh-token"
        },
    }
}
