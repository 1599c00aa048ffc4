//! Lindsay FieldNET: one `credential_provider!` block.

credential_provider! {
    /// Lindsay FieldNET credentials: your application's client id and secret and the grower's
    /// refresh token.
    Lindsay {
        name: "Lindsay",
        title: "Lindsay FieldNET",
        slug: "lindsay-credentials",
        object: "lindsayCredentials",
        operation: "lindsay",
        request: LindsayCredentialsRequest,
        response: LindsayCredentials,
        fields: {
            /// Your application's client id from Lindsay.
            required plain client_id: String,
            /// Your application's client secret.
            required secret client_secret: String,
            /// The grower's refresh token.
            required secret refresh_token: String,
            /// Which FieldNET environment the application is registered in.
            required environment client_environment: ClientEnvironment,
        },
        extras: {
            /// The current access token, once one has been issued.
            access_token: Option<String>,
            /// What the provider said about the current token.
            token_metadata: TokenMetadata,
        },
        // Lindsay publishes no token endpoint: configure it (see the README).
        check: CheckKind::OAuthRefresh(OAuthCheck::unpublished(
            ClientAuth::Basic { id: "clientId", secret: "clientSecret" },
        )),
        example: {
            "clientId": "your-client-id",
            "clientSecret": "your-client-secret",
            "refreshToken": "grower-refresh-token",
            "clientEnvironment": "PRODUCTION"
        },
    }
}
